/**
 * The one error type of the HTTP edge and the one mapping to the documented body, which carries
 * both vLLM-Omni's `detail` and OpenAI's `error` object (openapi.yaml `ErrorResponse`).
 *
 * @module
 */
import type { ZodError } from "zod";

/** One entry of a 422 `detail` list (FastAPI/Pydantic v1 shape). */
export interface ValidationItem {
  loc: (string | number)[];
  msg: string;
  type: string;
}

/** An error with its HTTP status and OpenAI error fields. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly options: {
      type?: string;
      param?: string | null;
      code?: string | null;
      detail?: ValidationItem[];
      headers?: Record<string, string>;
    } = {},
  ) {
    super(message);
  }

  /** The response body. */
  body(): Record<string, unknown> {
    const type = this.options.type ??
      (this.status >= 500 ? "server_error" : "invalid_request_error");
    return {
      detail: this.options.detail ?? this.message,
      error: {
        message: this.message,
        type,
        param: this.options.param ?? null,
        code: this.options.code ?? null,
      },
    };
  }
}

/** Absolute paths in a message, shortened to their last part (clients see no filesystem). */
export function withoutPaths(message: string): string {
  return message.replace(/(?:\/[\w.@+~-]+){2,}\/?/g, (path) => {
    const parts = path.split("/").filter(Boolean);
    return parts.at(-1) ?? path;
  });
}

/** 400 with OpenAI's `invalid_value` code. */
export const badRequest = (message: string, param: string | null = null) =>
  new ApiError(400, message, { param, code: "invalid_value" });

/** The 422 of a body that is not JSON (FastAPI's `value_error.jsondecode`). */
export const invalidJson = () =>
  new ApiError(422, "Request body is not valid JSON.", {
    detail: [{ loc: ["body"], msg: "Invalid JSON body", type: "value_error.jsondecode" }],
  });

/** 503 while no engine is ready (vLLM-Omni's exact message). */
export const ENGINE_NOT_READY =
  "Diffusion engine not initialized. Start server with a diffusion model.";

function pydanticItem(issue: ZodError["issues"][number]): ValidationItem {
  const loc = ["body", ...issue.path.map((p) => typeof p === "symbol" ? String(p) : p)];
  switch (issue.code) {
    case "invalid_type":
      if (/received undefined/.test(issue.message)) {
        return { loc, msg: "field required", type: "value_error.missing" };
      }
      return {
        loc,
        msg: `value is not a valid ${issue.expected}`,
        type: `type_error.${issue.expected}`,
      };
    case "too_small":
      return issue.origin === "string" || issue.origin === "array"
        ? {
          loc,
          msg: `ensure this value has at least ${issue.minimum} ${
            issue.origin === "string" ? "characters" : "items"
          }`,
          type: "value_error.any_str.min_length",
        }
        : {
          loc,
          msg: `ensure this value is greater than or equal to ${issue.minimum}`,
          type: "value_error.number.not_ge",
        };
    case "too_big":
      return issue.origin === "string" || issue.origin === "array"
        ? {
          loc,
          msg: `ensure this value has at most ${issue.maximum} ${
            issue.origin === "string" ? "characters" : "items"
          }`,
          type: "value_error.any_str.max_length",
        }
        : {
          loc,
          msg: `ensure this value is less than or equal to ${issue.maximum}`,
          type: "value_error.number.not_le",
        };
    case "invalid_value":
      return {
        loc,
        msg: `value is not a valid enumeration member; permitted: ${
          issue.values.map((v) => `'${String(v)}'`).join(", ")
        }`,
        type: "type_error.enum",
      };
    default:
      return { loc, msg: issue.message, type: `value_error.${issue.code}` };
  }
}

/** 422 from a zod error, listing every violation. */
export function validationError(error: ZodError): ApiError {
  const detail = error.issues.map(pydanticItem);
  const first = detail[0];
  const message = detail.map((d) => `${d.loc.join(".")}: ${d.msg}`).join("; ");
  return new ApiError(422, message, {
    detail,
    param: first && first.loc.length > 1 ? first.loc.slice(1).join(".") : null,
  });
}
