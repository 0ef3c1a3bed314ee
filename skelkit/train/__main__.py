"""``python -m skelkit.train`` (and ``torchrun -m skelkit.train``) run the skeltrain CLI."""

from skelkit.train.cli import main

if __name__ == "__main__":
    main(prog_name="skeltrain")
