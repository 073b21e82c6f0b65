"""The package's version and where it installs from, in a module of its own so that what every saved config and model
card records (`configuration_utils`, `model_card_utils`) reads them without importing the package's public API."""

__version__ = "0.2.0"

REPOSITORY_URL = "https://github.com/hf-vqvae/hf-vqvae"

# hf-vqvae is not on PyPI yet: cards, hints and errors tell a reader to install it from its repository. Once it is
# published, this becomes `pip install hf-vqvae`.
INSTALL_COMMAND = f'pip install "hf-vqvae @ git+{REPOSITORY_URL}"'
