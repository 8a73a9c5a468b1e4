"""Stage 5, report: figures per notebook, the HTML report and the summary the README is written from."""
