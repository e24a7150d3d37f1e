#!/usr/bin/env bash
# The chat-completions curl of the text-to-image example: writes output.png. Variables:
#   PORT (8091), PROMPT (a caption in the default model's grammar: models/shapes-tiny/README.md;
#   the example's "A beautiful landscape painting" suits Qwen-Image), HEIGHT and WIDTH (256, the
#   default model's size; the example's 1024 suits Qwen-Image), STEPS (20; the example's 50),
#   TRUE_CFG_SCALE (4.0), SEED (42), OUTPUT (output.png)
set -euo pipefail
PORT="${PORT:-8091}"
PROMPT="${PROMPT:-a large yellow star in the top left on a black background}"
HEIGHT="${HEIGHT:-256}"
WIDTH="${WIDTH:-256}"
STEPS="${STEPS:-20}"
TRUE_CFG_SCALE="${TRUE_CFG_SCALE:-4.0}"
SEED="${SEED:-42}"
OUTPUT="${OUTPUT:-output.png}"

body=$(jq -n --arg prompt "$PROMPT" --argjson height "$HEIGHT" --argjson width "$WIDTH" \
  --argjson steps "$STEPS" --argjson cfg "$TRUE_CFG_SCALE" --argjson seed "$SEED" '{
  messages: [{role: "user", content: $prompt}],
  extra_body: {
    height: $height,
    width: $width,
    num_inference_steps: $steps,
    true_cfg_scale: $cfg,
    seed: $seed
  }
}')
curl -sf "http://localhost:${PORT}/v1/chat/completions" \
  -H "Content-Type: application/json" \
  -d "$body" | jq -r '.choices[0].message.content[0].image_url.url' | cut -d',' -f2- |
  base64 -d > "$OUTPUT"
echo "wrote $OUTPUT"
