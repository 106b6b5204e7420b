class ConvertError(ValueError):
    """The model uses something the converter cannot map; the message names it."""
