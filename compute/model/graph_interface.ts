/**
 * Checking a session's declared inputs against what a pipeline can drive, so that a graph it
 * cannot feed fails at load time with both lists in the message.
 *
 * @module
 */
import type { Session, TensorInfo } from "../backends/backend.ts";
import { InterfaceMismatchError } from "../errors.ts";

/** One input a pipeline knows how to feed. */
export interface InputSpec {
  name: string;
  types: readonly string[];
  ranks: readonly number[];
}

const describe = (t: TensorInfo) => `${t.name} ${t.type} [${t.shape.join(",")}]`;
const describeSpec = (s: InputSpec) => `${s.name} ${s.types.join("|")} rank ${s.ranks.join("|")}`;

/**
 * Returns the declared input for each spec, or throws {@linkcode InterfaceMismatchError} listing
 * expected and found inputs when one is missing, has another dtype or rank, or when the graph
 * wants an input the pipeline does not know.
 */
export function matchInputs(
  label: string,
  session: Session,
  specs: readonly InputSpec[],
): Map<string, TensorInfo> {
  const found = new Map(session.inputs.map((t) => [t.name, t]));
  const fits = specs.every((s) => {
    const t = found.get(s.name);
    return t && s.types.includes(t.type) && s.ranks.includes(t.shape.length);
  });
  const unknown = session.inputs.filter((t) => !specs.some((s) => s.name === t.name));
  if (!fits || unknown.length > 0) {
    throw new InterfaceMismatchError(
      `Cannot drive ${label}: expected inputs ${specs.map(describeSpec).join(", ")}; ` +
        `found ${session.inputs.map(describe).join(", ")}`,
    );
  }
  return found;
}

/** Returns the named output, or throws {@linkcode InterfaceMismatchError}. */
export function matchOutput(
  label: string,
  session: Session,
  name: string,
  types: readonly string[],
): TensorInfo {
  const t = session.outputs.find((o) => o.name === name);
  if (!t || !types.includes(t.type)) {
    throw new InterfaceMismatchError(
      `Cannot drive ${label}: expected output ${name} ${types.join("|")}; found ${
        session.outputs.map(describe).join(", ")
      }`,
    );
  }
  return t;
}

/** One place that states a size of the model: a config field or a graph tensor's axis. */
export interface SizeStatement {
  /** e.g. `unet/config.json in_channels` or `unet/model.onnx sample[1]`. */
  source: string;
  /** A number, or anything else (a symbolic axis, an absent field), which states nothing. */
  value: unknown;
}

/** What `session`'s input or output `name` states at `axis`. */
export function axisStatement(
  label: string,
  session: Session,
  name: string,
  axis: number,
): SizeStatement {
  const t = [...session.inputs, ...session.outputs].find((t) => t.name === name);
  return { source: `${label} ${name}[${axis}]`, value: t?.shape[axis] };
}

/** What a config's field states. */
export function configStatement(
  file: string,
  config: Record<string, unknown>,
  key: string,
): SizeStatement {
  return { source: `${file} ${key}`, value: config[key] };
}

/**
 * Throws {@linkcode InterfaceMismatchError} when the statements that give a number for `what`
 * (e.g. the latent channels: the UNet's config and graph, the VAE's) do not all give the same
 * one, naming each. Run at load, so that a model whose parts do not fit together fails there with
 * the reason rather than at its first request.
 */
export function checkAgreement(what: string, statements: readonly SizeStatement[]): void {
  const stated = statements.filter((s) => typeof s.value === "number");
  if (new Set(stated.map((s) => s.value)).size <= 1) return;
  throw new InterfaceMismatchError(
    `The model's parts do not fit together: ${what} differ (${
      stated.map((s) => `${s.source} = ${s.value}`).join(", ")
    })`,
  );
}
