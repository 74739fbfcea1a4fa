"""devbox's terminal UI (Textual). Imported only by `devbox tui`, never at CLI start."""
