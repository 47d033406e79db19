"""``python -m learn ...`` (and ``torchrun -m learn train ...``): the ``learn`` command."""

from cli import learn

if __name__ == "__main__":
    learn(prog_name="learn")
