"""popef_dump: inspect PopEF files (the command is in popef_dump.cli)."""
