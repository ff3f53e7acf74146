"""``python -m alerthooks.testing.fakes``: serve every fake API and print its ``export`` lines.

A module of its own, imported by nothing, so running it does not import it twice.
"""

from alerthooks.testing.fakeserver import main

if __name__ == "__main__":
    main()
