// Which preview images of a step belong side by side: a prompt with the trigger word next to the
// same prompt without it (seed 002's progression: step_125_trigger.png | step_125_notrigger.png),
// the trigger either dropped or replaced by the class word. Pure, so test_web_modules.py checks it.

const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Spaces and commas tidied, case folded: "a photo of  , cat" and "a photo of, cat" compare equal. */
function normal(text) {
    return String(text ?? "").toLowerCase().replace(/\s*,\s*/g, ", ").replace(/\s+/g, " ")
        .replace(/^[\s,]+|[\s,]+$/g, "").replace(/(, )+/g, ", ");
}

/** Does `text` contain `trigger` as a word of its own? */
export function hasTrigger(text, trigger) {
    if (!trigger) return false;
    return new RegExp(`(^|[^\\w])${escape(trigger)}($|[^\\w])`, "i").test(String(text ?? ""));
}

/** What a trigger prompt reads like without the trigger: dropped, or replaced by the class word. */
function withoutTrigger(text, trigger, classWord) {
    const pattern = new RegExp(`(^|[^\\w])${escape(trigger)}(?=$|[^\\w])`, "gi");
    const forms = [normal(text.replace(pattern, "$1"))];
    if (classWord) forms.push(normal(text.replace(pattern, `$1${classWord}`)));
    return forms;
}

/**
 * Rows for one step's `images` ([{path, prompt}], prompt order): {trigger, plain} for a pair found,
 * {single} for every other image, in the order of each row's first image.
 * @returns {Array<{trigger: object, plain: object} | {single: object}>}
 */
export function pairPrompts(images, trigger, classWord = null) {
    const used = new Set();
    const rows = [];
    images.forEach((image, i) => {
        if (used.has(i)) return;
        if (image.prompt && hasTrigger(image.prompt, trigger)) {
            const forms = withoutTrigger(image.prompt, trigger, classWord);
            const j = images.findIndex((other, k) => !used.has(k) && k !== i && other.prompt
                && !hasTrigger(other.prompt, trigger) && forms.includes(normal(other.prompt)));
            if (j >= 0) {
                used.add(i).add(j);
                rows.push({ trigger: image, plain: images[j] });
                return;
            }
        } else if (image.prompt && trigger) {
            // A no-trigger prompt listed before its trigger twin: the twin's turn makes the pair.
            const j = images.findIndex((other, k) => !used.has(k) && k > i && other.prompt
                && hasTrigger(other.prompt, trigger) && withoutTrigger(other.prompt, trigger, classWord).includes(normal(image.prompt)));
            if (j >= 0) {
                used.add(i).add(j);
                rows.push({ trigger: images[j], plain: image });
                return;
            }
        }
        used.add(i);
        rows.push({ single: image });
    });
    return rows;
}
