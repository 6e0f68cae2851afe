"""``python -m ganzoo`` (what torchrun runs: ``torchrun --nproc_per_node N -m ganzoo train ...``)."""
from .cli import main

if __name__ == "__main__":
    main()
