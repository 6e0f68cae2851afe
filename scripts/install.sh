#!/usr/bin/env bash
# Install ganzoo, its built-in architecture plugins (mlp, dcgan, cgan, sngan, biggan, stylegan2), the test tools (pytest, httpx2,
# selenium + Debian's chromium) and the Fashion-MNIST data (Debian package) on a fresh
# Debian/Ubuntu machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

# Headless Chromium + its driver for tests/test_serve_browser.py (`ganzoo serve` end to end,
# through selenium). Not fatal: without a browser that one test file is skipped, with the reason.
if ! { command -v chromium >/dev/null && command -v chromedriver >/dev/null; } && command -v apt-get >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null; } \
    || echo "warning: could not install chromium and chromium-driver; tests/test_serve_browser.py will be skipped" >&2
fi

# torch is pinned here, not in pyproject.toml: this pair installs together
# (timm needs torchvision); other machines may use any torch >= 2.4.
python3 -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
python3 -m pip install -q --disable-pip-version-check -e '.[test]' \
  -e plugins/ganzoo-mlp -e plugins/ganzoo-dcgan -e plugins/ganzoo-cgan \
  -e plugins/ganzoo-sngan -e plugins/ganzoo-biggan -e plugins/ganzoo-stylegan2
