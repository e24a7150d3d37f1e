/**
 * The worker `converted.ts` runs a conversion in: one message `{src, out, options}` in; out,
 * `{read}` (the bytes of stored tensors read so far) as it goes, then one message (`{}` when done,
 * `{error}` with one line when not), so the thread that started it keeps serving meanwhile.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { convert, type ConvertOptions } from "../convert/mod.ts";
import { ModelLoadError } from "../errors.ts";

/** What the worker is asked to convert. */
export interface ConvertRequest {
  src: string;
  out: string;
  options: ConvertOptions;
}

self.onmessage = async (event: MessageEvent<ConvertRequest>) => {
  const { src, out, options } = event.data;
  try {
    let read = 0;
    await convert(src, out, {
      ...options,
      onRead: (bytes) => self.postMessage({ read: read += bytes }),
    });
    self.postMessage({});
  } catch (e) {
    // A ConvertError already names the file and what is wrong; anything else is the converter's.
    const error = e instanceof ModelLoadError
      ? e.message
      : `converting ${src} failed: ${(e as Error).message}`;
    self.postMessage({ error });
  }
};
