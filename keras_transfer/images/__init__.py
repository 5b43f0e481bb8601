"""Images: the one way the library reads them.

- `decoding`: the one decoder (libjpeg-turbo at a reduced scale, EXIF,
  16-bit, the pixel limit) and the one "read these files, skip a bad one
  with a warning". A new image format starts here.
- `folder`: a folder of labelled photos (one sub-folder per class): the
  scan, the seeded train/validation split, decoded once into memory.
- `stream`: the same files as a stream of batches, decoded in parallel,
  cached, sharded across workers.
"""

__all__ = []
