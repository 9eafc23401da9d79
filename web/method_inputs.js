// Pure logic of the Diffusion Cache node's inputs: which of them the node shows for the
// chosen method, which sit behind its "advanced" toggle, and each one's tooltip for that
// method. No DOM, no ComfyUI imports, so it runs under `node --test` as it is.
//
// The description comes from GET /diffusion_cache/methods (cache_core.methods.ui_description()):
//   {method: {label, about, inputs: [name...], advanced: [name...], tooltips: {name: text}}, ...}
// with "auto" first. An input no method lists (model, method, the timeline) is not ours to hide.

/** node.properties key that keeps the advanced toggle across saves (widgets_values stay as they were) */
export const ADVANCED_PROPERTY = "Show advanced inputs";

/** Every input any method of the description reads. */
export function knobNames(description) {
  const names = new Set();
  for (const entry of Object.values(description ?? {})) {
    for (const name of entry?.inputs ?? []) names.add(name);
  }
  return names;
}

/**
 * What the node shows for `method`.
 *
 * @param description GET /diffusion_cache/methods
 * @param method the method widget's value
 * @param options.showAdvanced the advanced toggle
 * @param options.linked names of inputs with a link (they stay shown: a link needs its slot)
 * @returns {{known: boolean, shown: string[], hidden: string[], advanced: string[],
 *   hiddenAdvanced: string[], tooltips: Object<string, string>}}
 *   shown / hidden partition every input of the description; advanced are the method's inputs
 *   behind the toggle (shown only with it on); tooltips hold the method's text per input it reads.
 *   A method the description does not know (an older or newer server) shows everything.
 */
export function methodView(description, method, { showAdvanced = false, linked = [] } = {}) {
  const all = [...knobNames(description)];
  const link = new Set(linked);
  const entry = description?.[method];
  if (!entry) {
    return { known: false, shown: all, hidden: [], advanced: [], hiddenAdvanced: [], tooltips: {} };
  }
  const own = new Set(entry.inputs ?? []);
  const advancedSet = new Set((entry.advanced ?? []).filter((n) => own.has(n)));
  const isShown = (name) => link.has(name) || (own.has(name) && (showAdvanced || !advancedSet.has(name)));
  const advanced = (entry.inputs ?? []).filter((n) => advancedSet.has(n));
  return {
    known: true,
    shown: all.filter(isShown),
    hidden: all.filter((n) => !isShown(n)),
    advanced,
    hiddenAdvanced: advanced.filter((n) => !isShown(n)),
    tooltips: { ...(entry.tooltips ?? {}) },
  };
}

/** The toggle's label: how many inputs it shows or hides. */
export function advancedLabel(view) {
  const n = view.advanced.length;
  return `advanced inputs (${n})`;
}

/** The tooltip an input gets for a method: the method's text, with the method's name in front. */
export function inputTooltip(description, method, name, fallback = undefined) {
  const entry = description?.[method];
  const text = entry?.tooltips?.[name];
  if (!text) return fallback;
  return `${entry.label ?? method}: ${text}`;
}
