#!/usr/bin/env bash
# Starts denoise for the text-to-image examples (vLLM-Omni's `vllm serve Qwen/Qwen-Image --omni
# --port 8091`). Every setting is a variable:
#   MODEL      a model folder or Hugging Face id; empty: the embedded shapes-tiny model
#   PORT       default 8091, as in the examples
#   LORA_ROOT  folder requests may read LoRA adapters from (default: the shipped adapters)
# Extra arguments go to the server, e.g. `bash run_server.sh --device cpu`. Deno is found as the
# README runs it: `deno` when it is on PATH, otherwise the binary of `npx -y deno@2.9.6`; DENO
# names another deno binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL="${MODEL:-}"
PORT="${PORT:-8091}"
LORA_ROOT="${LORA_ROOT:-models/loras}"
args=(--port "$PORT" --lora-root "$LORA_ROOT")
if [[ -n "$MODEL" ]]; then args+=(--model "$MODEL"); fi
if [[ -z "${DENO:-}" ]]; then
  if command -v deno >/dev/null; then DENO=deno
  # The binary itself, not npx: npx does not pass SIGTERM on, so the server would outlive it.
  else DENO="$(npx -y deno@2.9.6 eval 'console.log(Deno.execPath())')"; fi
fi
exec "$DENO" task serve "${args[@]}" "$@"
