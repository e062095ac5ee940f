"""The shipped quality model (installed as ``iqs_daemon.models``); see README.md here."""
