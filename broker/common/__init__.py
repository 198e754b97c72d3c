"""What every package leans on: the error tree, redaction, the clock, words shown to people,
and files written atomically and privately."""
