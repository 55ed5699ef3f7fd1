#!/usr/bin/env bash
# Regenerates prompts/video/hold.ivf: the still card a video caller sees while on hold.
#
# README: run `scripts/make-hold-video.sh` from anywhere (needs `apt-get install vpx-tools`
# and python3), then commit prompts/video/. The binary embeds the file with include_bytes!,
# so the gateway never encodes video at run time and tests never need the encoder.
#
# What it makes: 10 frames of one 320x240 picture ("HOLDLINE / PLEASE HOLD / AN AGENT WILL /
# BE WITH YOU SOON", white on dark blue, drawn with the 5x7 font below so no font library
# is needed) encoded as VP8 at 5 frames/s with a key frame every 10 frames and no hidden
# alt-ref frames, in an IVF file. The gateway plays the 10 frames in a loop at 5 fps: a
# key frame every 2 s (a phone that joins or lost a packet has the picture within 2 s), the
# frames between are the small inter frames of an unchanged picture.
#
# Deterministic: the picture is generated, vpxenc runs single-threaded in one pass.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/prompts/video"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"

python3 - "$TMP/card.y4m" <<'PY'
import sys
W, H, FRAMES = 320, 240, 10
FONT = {
    "A": ["01110", "10001", "10001", "11111", "10001", "10001", "10001"],
    "B": ["11110", "10001", "10001", "11110", "10001", "10001", "11110"],
    "D": ["11110", "10001", "10001", "10001", "10001", "10001", "11110"],
    "E": ["11111", "10000", "10000", "11110", "10000", "10000", "11111"],
    "G": ["01110", "10001", "10000", "10111", "10001", "10001", "01111"],
    "H": ["10001", "10001", "10001", "11111", "10001", "10001", "10001"],
    "I": ["01110", "00100", "00100", "00100", "00100", "00100", "01110"],
    "L": ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
    "N": ["10001", "11001", "10101", "10011", "10001", "10001", "10001"],
    "O": ["01110", "10001", "10001", "10001", "10001", "10001", "01110"],
    "P": ["11110", "10001", "10001", "11110", "10000", "10000", "10000"],
    "S": ["01111", "10000", "10000", "01110", "00001", "00001", "11110"],
    "T": ["11111", "00100", "00100", "00100", "00100", "00100", "00100"],
    "U": ["10001", "10001", "10001", "10001", "10001", "10001", "01110"],
    "W": ["10001", "10001", "10001", "10101", "10101", "10101", "01010"],
    "Y": ["10001", "10001", "01010", "00100", "00100", "00100", "00100"],
    " ": ["00000"] * 7,
}
# (text, pixel scale, top row)
LINES = [("HOLDLINE", 3, 30), ("PLEASE HOLD", 4, 80), ("AN AGENT WILL", 3, 140), ("BE WITH YOU SOON", 3, 175)]
BG, FG = (40, 156, 114), (235, 128, 128)  # Y, U, V: dark blue, white
ink = [[False] * W for _ in range(H)]
for text, s, top in LINES:
    width = len(text) * 6 * s - s
    left = (W - width) // 2
    for i, ch in enumerate(text):
        for r, row in enumerate(FONT[ch]):
            for c, bit in enumerate(row):
                if bit == "1":
                    for dy in range(s):
                        for dx in range(s):
                            ink[top + r * s + dy][left + (i * 6 + c) * s + dx] = True
y = bytes(FG[0] if ink[r][c] else BG[0] for r in range(H) for c in range(W))
def chroma(k):
    out = bytearray()
    for r in range(0, H, 2):
        for c in range(0, W, 2):
            n = sum(ink[r + a][c + b] for a in (0, 1) for b in (0, 1))
            out.append((FG[k] * n + BG[k] * (4 - n)) // 4)
    return bytes(out)
frame = b"FRAME\n" + y + chroma(1) + chroma(2)
with open(sys.argv[1], "wb") as f:
    f.write(b"YUV4MPEG2 W%d H%d F5:1 Ip A1:1 C420jpeg\n" % (W, H))
    f.write(frame * FRAMES)
PY

vpxenc --codec=vp8 --ivf --passes=1 --threads=1 --good --cpu-used=0 \
    --end-usage=cq --cq-level=8 --target-bitrate=400 \
    --kf-min-dist=10 --kf-max-dist=10 --auto-alt-ref=0 --lag-in-frames=0 \
    --error-resilient=1 --limit=10 --quiet \
    -o "$OUT/hold.ivf" "$TMP/card.y4m"
ls -l "$OUT/hold.ivf"
