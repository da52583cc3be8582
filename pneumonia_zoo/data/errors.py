"""Why an input image could not be used: shared by the raster and DICOM decoders."""

from pneumonia_zoo.errors import InvalidInput, TooLarge


class ImageDecodeError(InvalidInput, ValueError):
    """The bytes are not a usable X-ray image; the message says why."""


class ImageTooLargeError(ImageDecodeError, TooLarge):
    """The image has more pixels than allowed (a decompression-bomb guard)."""
