#!/usr/bin/env bash
# Edits an image with curl through /v1/images/edits (multipart, as OpenAI's edits reference sends
# it); writes edited.png. Without INPUT, it first draws one with /v1/images/generations. Variables:
#   PORT (8091), INPUT (an image to edit; default: drawn from SOURCE_PROMPT into input.png),
#   SOURCE_PROMPT ("a large red circle on a blue background"), PROMPT (the edit: "a large red
#   circle on a green background"), MASK (a PNG with alpha, transparent where to repaint; default
#   none: the whole image), STRENGTH (0.8: how much of the schedule runs), STEPS (20), SEED (42),
#   OUTPUT (edited.png)
set -euo pipefail
PORT="${PORT:-8091}"
SOURCE_PROMPT="${SOURCE_PROMPT:-a large red circle on a blue background}"
PROMPT="${PROMPT:-a large red circle on a green background}"
STRENGTH="${STRENGTH:-0.8}"
STEPS="${STEPS:-20}"
SEED="${SEED:-42}"
OUTPUT="${OUTPUT:-edited.png}"
SERVER="http://localhost:${PORT}"

if [ -z "${INPUT:-}" ]; then
  INPUT=input.png
  curl -sf "$SERVER/v1/images/generations" -H "Content-Type: application/json" \
    -d "$(jq -n --arg prompt "$SOURCE_PROMPT" --argjson seed "$SEED" \
      '{prompt: $prompt, seed: $seed, response_format: "b64_json"}')" |
    jq -r '.data[0].b64_json' | base64 -d > "$INPUT"
  echo "drew $INPUT"
fi

mask=()
if [ -n "${MASK:-}" ]; then mask=(-F "mask=@${MASK}"); fi
curl -sf "$SERVER/v1/images/edits" \
  -F "image=@${INPUT}" "${mask[@]}" \
  -F "prompt=${PROMPT}" \
  -F "strength=${STRENGTH}" \
  -F "num_inference_steps=${STEPS}" \
  -F "seed=${SEED}" |
  jq -r '.data[0].b64_json' | base64 -d > "$OUTPUT"
echo "wrote $OUTPUT"
