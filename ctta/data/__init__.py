"""Image data: the `ImageData` type every scenario streams, datasets by name (embedded digits
and glyphs, torchvision, ImageFolder roots, the user's arrays and factories), class and
sample splits, and the common corruptions. Imports only `ctta.core`."""
