// @ts-check
/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/**
 * The playground's edit mode: an image dropped, pasted, chosen, or taken from the gallery ("Edit
 * this"); a mask painted over it with a brush; a strength. `editForm()` turns them into the
 * multipart body of `POST /v1/images/edits`: the image as sent, and, when something is painted,
 * a mask PNG of the image's size whose painted pixels are transparent (OpenAI's mask: transparent
 * = edit). Shown only when the served model can edit (`max_edit_images` in `/v1/models`).
 */

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
/** @param {string} id */
const canvas = (id) => /** @type {HTMLCanvasElement} */ (document.getElementById(id));

/** @type {{ image?: Blob, painted: boolean, onChange: () => void }} */
const edit = { painted: false, onChange: () => {} };

/**
 * Shows the edit mode when the model can edit.
 * @param {boolean} editable
 */
export function setEditable(editable) {
  $("edit-field").hidden = !editable;
  if (!editable) clearEdit();
}

/** Whether an image is loaded to edit. */
export const editing = () => edit.image !== undefined && !$("edit-field").hidden;

/** Strength and whether a mask is painted, for the gallery's caption. */
export const editSummary = () => ({
  strength: Number(/** @type {HTMLInputElement} */ ($("strength")).value),
  masked: edit.painted,
});

/**
 * Loads `blob` as the image to edit: drawn at its own size, with an empty mask over it.
 * @param {Blob} blob
 */
export async function loadEditImage(blob) {
  const bitmap = await createImageBitmap(blob);
  for (const id of ["edit-image", "edit-mask"]) {
    canvas(id).width = bitmap.width;
    canvas(id).height = bitmap.height;
  }
  canvas("edit-image").getContext("2d")?.drawImage(bitmap, 0, 0);
  bitmap.close();
  edit.image = blob;
  clearMask();
  $("edit-drop").hidden = true;
  $("edit-canvas").hidden = $("edit-tools").hidden = false;
  $("edit-field").scrollIntoView({ block: "nearest" });
  edit.onChange();
}

/** Forgets the image and its mask. */
function clearEdit() {
  edit.image = undefined;
  clearMask();
  $("edit-drop").hidden = false;
  $("edit-canvas").hidden = $("edit-tools").hidden = true;
  edit.onChange();
}

function clearMask() {
  const mask = canvas("edit-mask");
  mask.getContext("2d")?.clearRect(0, 0, mask.width, mask.height);
  edit.painted = false;
}

/**
 * The mask as OpenAI defines it: the image's size, opaque where kept, transparent where painted.
 * @returns {Promise<Blob>}
 */
function maskPng() {
  const painted = canvas("edit-mask");
  const out = document.createElement("canvas");
  out.width = painted.width;
  out.height = painted.height;
  const ctx = /** @type {CanvasRenderingContext2D} */ (out.getContext("2d"));
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.globalCompositeOperation = "destination-out";
  ctx.drawImage(painted, 0, 0);
  return new Promise((resolve, reject) =>
    out.toBlob((b) => b ? resolve(b) : reject(new Error("The mask could not be encoded.")))
  );
}

/**
 * The multipart body of an edit: `fields` (objects as JSON text, as the API reads them), the
 * image, the strength and the painted mask.
 * @param {Record<string, unknown>} fields
 */
export async function editForm(fields) {
  const form = new FormData();
  form.append("image", /** @type {Blob} */ (edit.image), "image.png");
  if (edit.painted) form.append("mask", await maskPng(), "mask.png");
  form.append("strength", /** @type {HTMLInputElement} */ ($("strength")).value);
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined) {
      form.append(key, typeof value === "object" ? JSON.stringify(value) : String(value));
    }
  }
  return form;
}

/** Brush strokes on the mask canvas, in the image's pixels, at the brush size. */
function wirePainting() {
  const mask = canvas("edit-mask");
  const ctx = /** @type {CanvasRenderingContext2D} */ (mask.getContext("2d"));
  /** @type {{ x: number, y: number } | undefined} */
  let last;
  /** @param {PointerEvent} e */
  const at = (e) => {
    const box = mask.getBoundingClientRect();
    return {
      x: ((e.clientX - box.left) / box.width) * mask.width,
      y: ((e.clientY - box.top) / box.height) * mask.height,
    };
  };
  /** @param {{ x: number, y: number }} to */
  const stroke = (to) => {
    const brush = Number(/** @type {HTMLInputElement} */ ($("brush")).value);
    const scale = mask.width / mask.getBoundingClientRect().width;
    ctx.strokeStyle = ctx.fillStyle = "#ff3b3b";
    ctx.lineWidth = brush * scale;
    ctx.lineCap = "round";
    ctx.beginPath();
    ctx.moveTo((last ?? to).x, (last ?? to).y);
    ctx.lineTo(to.x, to.y);
    ctx.stroke();
    last = to;
    edit.painted = true;
  };
  mask.addEventListener("pointerdown", (e) => {
    mask.setPointerCapture(e.pointerId);
    last = undefined;
    stroke(at(e));
  });
  mask.addEventListener("pointermove", (e) => {
    if (mask.hasPointerCapture(e.pointerId)) stroke(at(e));
  });
  const end = () => {
    last = undefined;
    edit.onChange();
  };
  mask.addEventListener("pointerup", end);
  mask.addEventListener("pointercancel", end);
}

/**
 * The first image file of a drop or paste.
 * @param {DataTransfer | null} data
 */
const imageFile = (data) => [...(data?.files ?? [])].find((f) => f.type.startsWith("image/"));

/**
 * Wires the edit mode's controls; `onChange` runs when the image or mask changes.
 * @param {{ onChange: () => void, onError: (message: string) => void }} hooks
 */
export function wireEdit({ onChange, onError }) {
  edit.onChange = onChange;
  /** @param {Blob | undefined} file */
  const load = (file) => {
    if (file) {
      loadEditImage(file).catch(() => onError("That file is not an image this browser can read."));
    }
  };
  const drop = $("edit-drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    load(imageFile(e.dataTransfer));
  });
  drop.addEventListener("click", () => $("edit-file").click());
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      $("edit-file").click();
    }
  });
  $("edit-file").addEventListener("change", (e) => {
    const files = /** @type {HTMLInputElement} */ (e.target).files;
    load(files?.[0]);
  });
  // A pasted image is taken wherever the focus is, unless text is being pasted into a field.
  document.addEventListener("paste", (e) => {
    const file = $("edit-field").hidden ? undefined : imageFile(e.clipboardData);
    if (file) {
      e.preventDefault();
      load(file);
    }
  });
  $("clear-mask").addEventListener("click", () => {
    clearMask();
    onChange();
  });
  $("remove-edit").addEventListener("click", clearEdit);
  wirePainting();
}
