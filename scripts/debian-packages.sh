#!/usr/bin/env bash
# Installs the Debian packages attnlab's real data and browser tests use, those not yet there,
# in one apt-get call (then one call per package if that fails, so one package apt cannot find
# does not cost the others). It needs root or a password-less `sudo -n`; without them, or
# without apt-get, it warns, names the packages and exits 0: the tests needing them then skip
# and say why. `make test` and `make packages` run it; `scripts/debian-packages.sh PACKAGE...`
# installs only the packages named (those of the list below).
#
# Why each package:
# - chromium, chromium-driver: the HTML attention viewer driven in real headless Chromium
#   (tests/viz/test_html.py);
# - sword-text-web, sword-text-kjv, sword-text-sparv: the public-domain Bible modules behind
#   the real translation corpora (`attnlab data bible`, `make data`; tests/data/test_bible.py,
#   tests/cli/test_data_command.py);
# - dataset-fashion-mnist: the 70,000 Fashion-MNIST images of `--data builtin:fashion-mnist`
#   (`attnlab train image`; tests/data/test_images.py);
# - espeak-ng: the speech synthesiser that makes `--data builtin:spoken-words`
#   (`attnlab train audio`; tests/data/test_spoken_words.py);
# - fonts-noto-color-emoji: the colour emoji drawn as the images of `--data builtin:emoji`
#   (`attnlab train clip / vqvae / text2image`; tests/data/test_emoji_images.py).
set -uo pipefail

ALL=(chromium chromium-driver sword-text-web sword-text-kjv sword-text-sparv
     dataset-fashion-mnist espeak-ng fonts-noto-color-emoji)

# whether a package's files are already here (by the file attnlab reads, not by dpkg, so a
# copy installed some other way counts too)
present() {
    local sword=/usr/share/sword/mods.d
    case "$1" in
        chromium) command -v chromium >/dev/null 2>&1 ;;
        chromium-driver) command -v chromedriver >/dev/null 2>&1 ;;
        sword-text-web) [ -f "$sword/engWEB2015eb.conf" ] ;;
        sword-text-kjv) [ -f "$sword/engKJV2006eb.conf" ] ;;
        sword-text-sparv) [ -f "$sword/spaRV1909eb.conf" ] ;;
        dataset-fashion-mnist)
            [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ;;
        espeak-ng) command -v espeak-ng >/dev/null 2>&1 ;;
        fonts-noto-color-emoji) [ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] ;;
        *) echo "debian-packages.sh: unknown package $1 (known: ${ALL[*]})" >&2; exit 2 ;;
    esac
}

main() {
    local requested=("$@") wanted=() package
    [ "${#requested[@]}" -gt 0 ] || requested=("${ALL[@]}")
    for package in "${requested[@]}"; do
        present "$package" || wanted+=("$package")
    done
    [ "${#wanted[@]}" -eq 0 ] && return 0
    local skip="what needs ${wanted[*]} will skip (install them with: sudo apt-get install"
    skip+=" ${wanted[*]})"
    command -v apt-get >/dev/null 2>&1 || { echo "warning: no apt-get; $skip" >&2; return 0; }
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo="sudo -n"
        else
            echo "warning: not root and no password-less sudo; $skip" >&2
            return 0
        fi
    fi
    local apt="$sudo env DEBIAN_FRONTEND=noninteractive apt-get"
    local log="${TMPDIR:-/tmp}/attnlab-apt.log"
    echo "installing ${wanted[*]} (log: $log)"
    if ! $apt update -qq >"$log" 2>&1; then
        echo "warning: apt-get update failed (log: $log); $skip" >&2
        return 0
    fi
    $apt install -y -qq "${wanted[@]}" >>"$log" 2>&1 && return 0
    local failed=()
    for package in "${wanted[@]}"; do
        $apt install -y -qq "$package" >>"$log" 2>&1 || failed+=("$package")
    done
    [ "${#failed[@]}" -eq 0 ] || echo "warning: installing ${failed[*]} failed (log: $log);" \
        "what needs them will skip" >&2
    return 0
}

main "$@"
