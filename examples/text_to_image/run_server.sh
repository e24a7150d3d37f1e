#!/usr/bin/env bash
# Starts denoise for the text-to-image examples (vLLM-Omni's `vllm serve Qwen/Qwen-Image --omni
# --port 8091`). Every setting is a variable:
#   MODEL      a model folder or Hugging Face id; empty: the embedded shapes-tiny model
#   PORT       default 8091, as in the examples
#   LORA_ROOT  folder requests may read LoRA adapters from (default: the shipped adapters)
# Extra arguments go to the server, e.g. `bash run_server.sh --device cpu`; DENO names the deno
# binary when it is not on PATH.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL="${MODEL:-}"
PORT="${PORT:-8091}"
LORA_ROOT="${LORA_ROOT:-models/loras}"
args=(--port "$PORT" --lora-root "$LORA_ROOT")
if [[ -n "$MODEL" ]]; then args+=(--model "$MODEL"); fi
exec "${DENO:-deno}" task serve "${args[@]}" "$@"
