"""The broker's state as one value every face shows (tray, CLI, dashboard), the words for it,
and the actions a face may ask for."""
