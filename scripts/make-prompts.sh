#!/usr/bin/env bash
# Regenerates every prompt clip under prompts/ from espeak-ng and sox.
#
# README: run `scripts/make-prompts.sh` from anywhere (needs `apt-get install espeak-ng sox`),
# then commit prompts/. The binary embeds these files with include_bytes!, so a changed clip
# only takes effect after a rebuild.
#
# Output: raw headerless G.711, mono 8000 Hz, in both laws:
#   prompts/pcmu/<name>.ul   (mu-law, payload type 0)
#   prompts/pcma/<name>.al   (A-law,  payload type 8)
#
# Deterministic and idempotent: espeak-ng is deterministic for a given version, and sox runs
# with -D (no dither) because dither adds random noise, which would change the bytes on
# every run. Re-running rewrites identical files.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/prompts"
VOICE="${VOICE:-en-gb}"   # a clear British English voice shipped with espeak-ng
RATE="${RATE:-135}"       # words per minute; slower than the default 175 so numbers are easy to note
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

mkdir -p "$OUT/pcmu" "$OUT/pcma"

# Writes both G.711 encodings from a mono 8 kHz 16-bit WAV.
emit() {
    local name="$1" wav="$2"
    sox -D "$wav" -t ul "$OUT/pcmu/$name.ul"
    sox -D "$wav" -t al "$OUT/pcma/$name.al"
}

# Speaks TEXT into clip NAME: resample to 8 kHz mono, trim the silence espeak adds at both
# ends (the sentence builder inserts its own, measured pauses), normalise to -3 dBFS.
speak() {
    local name="$1" text="$2"
    espeak-ng -v "$VOICE" -s "$RATE" -w "$TMP/raw.wav" "$text"
    sox -D "$TMP/raw.wav" -r 8000 -c 1 -b 16 "$TMP/$name.wav" \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse \
        norm -3
    emit "$name" "$TMP/$name.wav"
}

# Digits, for the contact number: one clip per digit, read in isolation so each is clear.
digits=(zero one two three four five six seven eight nine)
for d in "${!digits[@]}"; do
    speak "$d" "${digits[$d]}"
done

# Number words for positions in the queue (n1..n19, tens, hundred, thousand).
ones=(zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen
    fifteen sixteen seventeen eighteen nineteen)
for n in $(seq 1 19); do
    speak "n$n" "${ones[$n]}"
done
tens=([2]=twenty [3]=thirty [4]=forty [5]=fifty [6]=sixty [7]=seventy [8]=eighty [9]=ninety)
for t in 2 3 4 5 6 7 8 9; do
    speak "n${t}0" "${tens[$t]}"
done
speak hundred "hundred"
speak thousand "thousand"

# Phrases.
speak your_contact_number_is "Your contact number is"
speak you_are_number "You are number"
speak in_the_queue "in the queue."
speak expected_wait_about "The expected wait is about"
speak expected_wait_up_to "The expected wait is up to"
speak still_learning "This is a rough guide: we are still learning how long calls take here."
speak to "to"
speak minutes "minutes."
speak minute "minute."
speak less_than_a_minute "The expected wait is less than a minute."
speak no_agents "No agents are available at the moment."
speak web_info "To see or change your place, visit our website and enter your contact number."
speak goodbye "Goodbye."
speak callback_goodbye "We will call you back. Goodbye."
speak connecting_agent "Please hold. We are connecting you to an agent now."
speak moving_call "We are moving your call now. Please hold."
speak not_connected "We could not connect you. You keep your place in the queue."
speak callback_connecting "This is a call-back. We are calling the customer now. Please hold."
# Back in by number (issue 16): a caller who was cut off keys their contact number.
speak key_number_hint "If you were cut off before, key your old contact number to get your place back."
speak welcome_back "Welcome back. You have your place again."
speak number_not_right "That number is not right. Please key it again."
speak number_tries_over "We could not find that number. You keep your new place in the queue."

# Music on hold: a gentle I-vi-IV-V progression in C, four chords of 5 s (20 s in all).
# Each chord fades in and out, so the loop point (end -> start) is silent on both sides and
# loops without a click. Kept low (-20 dBFS) so it never competes with speech.
chords=(
    "261.63 329.63 392.00"   # C
    "220.00 261.63 329.63"   # Am
    "174.61 220.00 261.63"   # F
    "196.00 246.94 293.66"   # G
)
parts=()
for i in "${!chords[@]}"; do
    read -r a b c <<<"${chords[$i]}"
    sox -D -n -r 8000 -c 3 -b 16 "$TMP/chord$i-3.wav" synth 5 sine "$a" sine "$b" sine "$c"
    sox -D "$TMP/chord$i-3.wav" -c 1 "$TMP/chord$i.wav" remix - fade t 0.8 5 1.2
    parts+=("$TMP/chord$i.wav")
done
sox -D "${parts[@]}" "$TMP/moh-raw.wav"
sox -D "$TMP/moh-raw.wav" "$TMP/moh.wav" norm -20
emit moh "$TMP/moh.wav"

echo "wrote $(find "$OUT" -type f | wc -l) files under $OUT"
