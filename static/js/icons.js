// Pictograms drawn inside graph nodes, one per chosen field, so values of
// different fields are told apart at a glance. 24×24 stroke drawings.

const SHAPES = {
  person: '<circle cx="12" cy="8" r="4"/><path d="M4 21c0-4.4 3.6-7 8-7s8 2.6 8 7"/>',
  hash: '<path d="M9 3 7 21M17 3l-2 18M4 9h17M3 15h17"/>',
  at: '<circle cx="12" cy="12" r="4"/><path d="M16 12v1.5a2.5 2.5 0 0 0 5 0V12a9 9 0 1 0-3.5 7.1"/>',
  mail: '<rect x="3" y="5" width="18" height="14" rx="2"/><path d="m3 7 9 6 9-6"/>',
  building: '<rect x="5" y="3" width="14" height="18"/><path d="M9 7h2M13 7h2M9 11h2M13 11h2M9 15h2M13 15h2"/>',
  chat: '<path d="M4 5h16v11H9l-5 4z"/>',
  globe: '<circle cx="12" cy="12" r="9"/><path d="M3 12h18M12 3c3 3.5 3 14.5 0 18M12 3c-3 3.5-3 14.5 0 18"/>',
  tag: '<path d="M3 12V3h9l9 9-9 9z"/><circle cx="7.5" cy="7.5" r="1.5"/>',
  link: '<path d="M10 14a4 4 0 0 0 5.7 0l3-3a4 4 0 0 0-5.7-5.7l-1 1M14 10a4 4 0 0 0-5.7 0l-3 3a4 4 0 0 0 5.7 5.7l1-1"/>',
  clock: '<circle cx="12" cy="12" r="9"/><path d="M12 7v5l3 2"/>',
  file: '<path d="M6 3h8l4 4v14H6z"/><path d="M14 3v4h4"/>',
  star: '<path d="m12 3 2.8 5.8 6.2.9-4.5 4.4 1 6.2L12 17.3 6.5 20.3l1-6.2L3 9.7l6.2-.9z"/>',
  dot: '<circle cx="12" cy="12" r="4" fill="#fff"/>',
};

export const ICON_NAMES = Object.keys(SHAPES);

/** A data URL of the icon, stroked in `color` (white inside nodes). */
export function iconUrl(name, color = "#fff") {
  const shape = SHAPES[name] ?? SHAPES.dot;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96" viewBox="0 0 24 24" fill="none" stroke="${color}" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">${shape}</svg>`;
  return `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
}

/** A sensible first icon for a field, guessed from its name and type. */
export function guessIcon(path, type, taken) {
  const name = path.toLowerCase();
  const rules = [
    [/hashtag|topic/, "hash"],
    [/mention|screen_name|handle|reply/, "at"],
    [/from|^to$|\.to$|^cc|\.cc|email|mail/, "mail"],
    [/user|name|author|person|owner/, "person"],
    [/org|company|domain/, "building"],
    [/subject|title|text|body|message/, "chat"],
    [/country|city|location|lang|geo/, "globe"],
    [/url|link|thread/, "link"],
    [/date|time|created/, "clock"],
    [/attach|file/, "file"],
    [/source|tag|label|category/, "tag"],
  ];
  for (const [pattern, icon] of rules) {
    if (pattern.test(name) && !taken.has(icon)) return icon;
  }
  if (type === "date") return "clock";
  return ICON_NAMES.find((icon) => !taken.has(icon)) ?? "dot";
}
