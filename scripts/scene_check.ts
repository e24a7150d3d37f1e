/**
 * Judges a picture of the shapes-tiny scene world (training/scenes.py): background colour, the
 * objects' colour, shape kind, count, size class and position, measured from the pixels alone.
 *
 * The background is the majority palette colour of the image border; the foreground is every
 * pixel far from the background's mean colour, split into 4-connected components (specks under
 * 0.15 % of the image, or under a fifth of the largest component, are ignored). The shape comes
 * from the largest component's bounding-box fill ratio, enclosed holes, centroid height and row
 * widths; the position is the nearest of the nine anchor points to its centroid.
 *
 * @module
 */
import type { RgbImage } from "../compute/mod.ts";

/** The palette of training/scenes.py `COLOURS`. */
export const PALETTE: Record<string, [number, number, number]> = {
  red: [220, 32, 32],
  green: [34, 168, 58],
  blue: [36, 72, 220],
  yellow: [244, 220, 40],
  white: [246, 246, 246],
  black: [16, 16, 16],
  orange: [246, 140, 24],
  purple: [142, 46, 184],
};
export const SHAPES = ["circle", "square", "triangle", "star", "heart", "ring"] as const;
/** Anchor centres (fractions of width, height) of training/scenes.py `POSITIONS`. */
export const POSITIONS: Record<string, [number, number]> = {
  "centre": [0.5, 0.5],
  "left": [0.25, 0.5],
  "right": [0.75, 0.5],
  "top": [0.5, 0.25],
  "bottom": [0.5, 0.75],
  "top left": [0.25, 0.25],
  "top right": [0.75, 0.25],
  "bottom left": [0.25, 0.75],
  "bottom right": [0.75, 0.75],
};

/** What a prompt asks for (training/heldout.json `expect`). */
export interface Expectation {
  colour: string;
  shape: string;
  background: string;
  count?: number;
  size?: "small" | "large";
  position?: string;
}

/** What the checker sees in an image. */
export interface SceneReading {
  background: string;
  /** Objects found (components), largest first. */
  count: number;
  colour?: string;
  shape?: string;
  size?: "small" | "medium" | "large";
  position?: string;
  /** Centroid of the largest object, as fractions of width and height. */
  centre?: [number, number];
  features?: Record<string, number>;
}

const ATTRIBUTES = ["colour", "background", "shape", "count", "size", "position"] as const;
/** A judged attribute. */
export type Attribute = typeof ATTRIBUTES[number];

/** Nearest palette colour name of an RGB triple. */
export function nearestColour(r: number, g: number, b: number): string {
  let best = "", bestD = Infinity;
  for (const [name, [pr, pg, pb]] of Object.entries(PALETTE)) {
    const d = (r - pr) ** 2 + (g - pg) ** 2 + (b - pb) ** 2;
    if (d < bestD) [best, bestD] = [name, d];
  }
  return best;
}

function argmaxCount(counts: Map<string, number>): string {
  let best = "", n = -1;
  for (const [k, v] of counts) if (v > n) [best, n] = [k, v];
  return best;
}

interface Component {
  id: number;
  pixels: number[];
  area: number;
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  cx: number;
  cy: number;
}

/** Reads a scene from an image. */
export function readScene(img: RgbImage): SceneReading {
  const { width: W, height: H, data } = img;
  // 1. Background: majority palette colour along the border, then its mean RGB.
  const border: number[] = [];
  for (let x = 0; x < W; x++) border.push(x, (H - 1) * W + x);
  for (let y = 1; y < H - 1; y++) border.push(y * W, y * W + W - 1);
  const votes = new Map<string, number>();
  for (const i of border) {
    const c = nearestColour(data[3 * i], data[3 * i + 1], data[3 * i + 2]);
    votes.set(c, (votes.get(c) ?? 0) + 1);
  }
  const background = argmaxCount(votes);
  let br = 0, bg = 0, bb = 0, bn = 0;
  for (const i of border) {
    if (nearestColour(data[3 * i], data[3 * i + 1], data[3 * i + 2]) !== background) continue;
    br += data[3 * i];
    bg += data[3 * i + 1];
    bb += data[3 * i + 2];
    bn++;
  }
  [br, bg, bb] = [br / bn, bg / bn, bb / bn];

  // 2. Foreground mask and components.
  const fg = new Uint8Array(W * H);
  for (let i = 0; i < W * H; i++) {
    const d = Math.hypot(data[3 * i] - br, data[3 * i + 1] - bg, data[3 * i + 2] - bb);
    fg[i] = d > 45 ? 1 : 0;
  }
  const label = new Int32Array(W * H).fill(-1);
  const components: Component[] = [];
  const stack: number[] = [];
  for (let s = 0; s < W * H; s++) {
    if (!fg[s] || label[s] >= 0) continue;
    const c: Component = {
      id: components.length,
      pixels: [],
      area: 0,
      x0: W,
      y0: H,
      x1: 0,
      y1: 0,
      cx: 0,
      cy: 0,
    };
    label[s] = components.length;
    stack.push(s);
    while (stack.length) {
      const i = stack.pop()!;
      const x = i % W, y = (i - x) / W;
      c.pixels.push(i);
      c.cx += x;
      c.cy += y;
      if (x < c.x0) c.x0 = x;
      if (x > c.x1) c.x1 = x;
      if (y < c.y0) c.y0 = y;
      if (y > c.y1) c.y1 = y;
      for (const j of [x > 0 ? i - 1 : -1, x < W - 1 ? i + 1 : -1, i - W, i + W]) {
        if (j >= 0 && j < W * H && fg[j] && label[j] < 0) {
          label[j] = components.length;
          stack.push(j);
        }
      }
    }
    c.area = c.pixels.length;
    c.cx /= c.area;
    c.cy /= c.area;
    components.push(c);
  }
  components.sort((a, b) => b.area - a.area);
  const minArea = Math.max(0.0015 * W * H, 0.2 * (components[0]?.area ?? 0));
  const objects = components.filter((c) => c.area >= minArea);
  if (!objects.length) return { background, count: 0 };

  // 3. Object colour: majority palette colour over all object pixels.
  const colourVotes = new Map<string, number>();
  for (const o of objects) {
    for (const i of o.pixels) {
      const c = nearestColour(data[3 * i], data[3 * i + 1], data[3 * i + 2]);
      if (c === background) continue;
      colourVotes.set(c, (colourVotes.get(c) ?? 0) + 1);
    }
  }
  const colour = argmaxCount(colourVotes);

  // 4. Shape, size and position of the largest object.
  const o = objects[0];
  const features = shapeFeatures(o, label, o.id, W);
  const shape = classifyShape(features);
  const side = Math.min(W, H);
  const rEq = Math.sqrt((o.x1 - o.x0 + 1) * (o.y1 - o.y0 + 1)) / 2 / side;
  const r = rEq / (SIZE_FACTOR[shape] ?? 1);
  const size = r < 0.13 ? "small" : r > 0.1775 ? "large" : "medium";
  const centre: [number, number] = [(o.cx + 0.5) / W, (o.cy + 0.5) / H];
  let position = "", best = Infinity;
  for (const [name, [ax, ay]] of Object.entries(POSITIONS)) {
    const d = (centre[0] - ax) ** 2 + (centre[1] - ay) ** 2;
    if (d < best) [position, best] = [name, d];
  }
  return {
    background,
    count: objects.length,
    colour,
    shape,
    size,
    position,
    centre,
    features: { ...features, radius: r },
  };
}

/** Bounding-box size of each shape relative to its circle of radius r (training/scenes.py). */
const SIZE_FACTOR: Record<string, number> = {
  circle: 1,
  ring: 1,
  heart: 1,
  square: 0.9,
  triangle: 0.96,
  star: 0.97,
};

/** Fill ratio, hole fraction, centroid height and row widths of a component. */
function shapeFeatures(
  o: Component,
  label: Int32Array,
  id: number,
  W: number,
): Record<string, number> {
  const w = o.x1 - o.x0 + 1, h = o.y1 - o.y0 + 1;
  const inside = (x: number, y: number) => label[y * W + x] === id;
  // Holes: pixels of the bounding box not in the component and not reachable from its edge.
  const outside = new Uint8Array(w * h);
  const stack: number[] = [];
  for (let x = 0; x < w; x++) {
    for (const y of [0, h - 1]) {
      if (!inside(o.x0 + x, o.y0 + y) && !outside[y * w + x]) {
        outside[y * w + x] = 1;
        stack.push(y * w + x);
      }
    }
  }
  for (let y = 0; y < h; y++) {
    for (const x of [0, w - 1]) {
      if (!inside(o.x0 + x, o.y0 + y) && !outside[y * w + x]) {
        outside[y * w + x] = 1;
        stack.push(y * w + x);
      }
    }
  }
  while (stack.length) {
    const i = stack.pop()!;
    const x = i % w, y = (i - x) / w;
    for (const [nx, ny] of [[x - 1, y], [x + 1, y], [x, y - 1], [x, y + 1]]) {
      if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
      const j = ny * w + nx;
      if (!outside[j] && !inside(o.x0 + nx, o.y0 + ny)) {
        outside[j] = 1;
        stack.push(j);
      }
    }
  }
  let hole = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) if (!outside[y * w + x] && !inside(o.x0 + x, o.y0 + y)) hole++;
  }
  const rowWidth = (f: number) => {
    const y = o.y0 + Math.min(h - 1, Math.round(f * (h - 1)));
    let n = 0;
    for (let x = o.x0; x <= o.x1; x++) if (inside(x, y)) n++;
    return n / w;
  };
  // Whether the column through the middle is interrupted near the top (a heart's notch).
  const mid = o.x0 + Math.round((w - 1) / 2);
  let topGap = 0;
  for (let y = o.y0; y < o.y0 + Math.round(0.2 * h); y++) if (!inside(mid, y)) topGap++;
  return {
    fill: o.area / (w * h),
    hole: hole / (o.area + hole),
    cy: (o.cy - o.y0 + 0.5) / h,
    aspect: w / h,
    w15: rowWidth(0.15),
    w50: rowWidth(0.5),
    w85: rowWidth(0.85),
    notch: topGap / h,
  };
}

/**
 * Feature prototypes of the six shapes as training/scenes.py renders them (means over 360
 * rendered scenes): fill, hole, centroid height, row widths at 15/50/85 % height, top notch.
 */
const PROTOTYPES: Record<string, number[]> = {
  circle: [0.78, 0, 0.5, 0.72, 1, 0.73, 0],
  square: [1, 0, 0.5, 1, 1, 1, 0],
  triangle: [0.51, 0, 0.665, 0.17, 0.52, 0.87, 0.01],
  star: [0.4, 0, 0.55, 0.15, 0.75, 0.45, 0.01],
  heart: [0.62, 0, 0.39, 0.92, 0.82, 0.18, 0.18],
  ring: [0.56, 0.3, 0.5, 0.72, 0.46, 0.72, 0],
};
const WEIGHTS = [2, 3, 3, 1, 1, 1, 2];

/** Shape kind from {@linkcode shapeFeatures}: the nearest prototype (weighted L2). */
function classifyShape(f: Record<string, number>): string {
  const v = [f.fill, f.hole, f.cy, f.w15, f.w50, f.w85, f.notch];
  let best = "", bestD = Infinity;
  for (const [shape, p] of Object.entries(PROTOTYPES)) {
    const d = p.reduce((acc, x, i) => acc + (WEIGHTS[i] * (v[i] - x)) ** 2, 0);
    if (d < bestD) [best, bestD] = [shape, d];
  }
  return best;
}

/** Per-attribute verdicts of a reading against what the prompt named. */
export function judge(
  expect: Expectation,
  seen: SceneReading,
): Partial<Record<Attribute, boolean>> {
  const out: Partial<Record<Attribute, boolean>> = {
    colour: seen.colour === expect.colour,
    background: seen.background === expect.background,
    shape: seen.shape === expect.shape,
  };
  if (expect.count !== undefined) out.count = seen.count === expect.count;
  if (expect.size !== undefined) out.size = seen.size === expect.size;
  if (expect.position !== undefined) out.position = seen.position === expect.position;
  return out;
}

/** Accuracy per attribute and over whole images ("all": every named attribute right). */
export interface Score {
  images: number;
  all: number;
  attributes: Partial<Record<Attribute, { right: number; of: number }>>;
}

/** Whether an image is right on every attribute its prompt names. */
export function allRight(verdict: Partial<Record<Attribute, boolean>>): boolean {
  return ATTRIBUTES.every((a) => verdict[a] !== false);
}

/** Adds up verdicts. */
export function score(verdicts: Partial<Record<Attribute, boolean>>[]): Score {
  const attributes: Score["attributes"] = {};
  for (const v of verdicts) {
    for (const a of ATTRIBUTES) {
      if (v[a] === undefined) continue;
      const s = attributes[a] ??= { right: 0, of: 0 };
      s.of++;
      if (v[a]) s.right++;
    }
  }
  const all = verdicts.filter(allRight).length;
  return { images: verdicts.length, all: all / Math.max(1, verdicts.length), attributes };
}

/** One line per attribute, e.g. `colour 236/240 (98.3 %)`. */
export function formatScore(s: Score): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  const lines = [`all named attributes right: ${pct(s.all)} of ${s.images} images`];
  for (const a of ATTRIBUTES) {
    const v = s.attributes[a];
    if (v) lines.push(`  ${a.padEnd(10)} ${v.right}/${v.of} (${pct(v.right / v.of)})`);
  }
  return lines.join("\n");
}
