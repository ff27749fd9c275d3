"""Reports: evaluation artifacts, tables and figures made from finished results."""
