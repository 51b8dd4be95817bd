"""Image decoding, validation, resizing, encoding and hashing (Pillow): `process.process_image`;
every reader decodes through `decode` (one mapping of any decoder failure to a reason)."""
