from newsletter.cli import app

app(prog_name="newsletter")
