"""The dashboard: server-rendered pages over the same functions as the CLI and the API (see `tether.ui.app`)."""
