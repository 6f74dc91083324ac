"""``python -m featurelens``: the same command line as the ``featurelens`` script."""

from featurelens.cli import main

if __name__ == "__main__":
    main()
