"""Pure NumPy/SciPy statistics: imported by every other layer, importing none of them."""
