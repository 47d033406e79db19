"""``python -m physfield ...``: the ``physfield`` command."""

from cli import physfield

if __name__ == "__main__":
    physfield(prog_name="physfield")
