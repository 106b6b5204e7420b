"""``python -m training ...`` runs the train command (same as ``python cli.py train``)."""
from .command import train

if __name__ == "__main__":
    train(prog_name="python -m training")
