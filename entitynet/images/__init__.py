"""Image decoding, validation, resizing, encoding and hashing (Pillow): `process.process_image`."""
