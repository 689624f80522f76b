// Which participant goes where in the room: a pure function of who is there and what the
// person chose, so the rules are in one place (the room draws what this returns).
//
// Grid: everyone in equal tiles, paged. Speaker view: one large tile and a filmstrip. The
// large tile is, first match wins: a host's spotlight for everyone, my own pin, the person
// presenting (their screen is on the stage then), the active speaker, the last one who
// spoke, the first other person. Hide self view takes my own tile out (not when I am alone).

export type LayoutMode = 'grid' | 'speaker';

export interface LayoutInput {
  mode: LayoutMode;
  me: string;
  /** Everyone, me first, in join order. */
  people: string[];
  pinned: string | null;
  spotlight: string | null;
  activeSpeaker: string | null;
  lastSpeaker: string | null;
  hideSelf: boolean;
  /** A screen share is shown on the stage (it takes the large place in every mode). */
  screen: boolean;
  page: number;
  pageSize: number;
}

export interface Layout {
  /** The participant shown large (speaker view), or null (grid, or a screen on the stage). */
  main: string | null;
  /** Why `main` was chosen: spotlight, pin, speaker, recent, first. */
  why: 'spotlight' | 'pin' | 'speaker' | 'recent' | 'first' | null;
  /** The small or grid tiles, in order. */
  tiles: string[];
  pages: number;
  page: number;
}

export function arrange(i: LayoutInput): Layout {
  const present = new Set(i.people);
  const visible = i.people.filter((p) => !(i.hideSelf && p === i.me && i.people.length > 1));
  const pick = (): [string | null, Layout['why']] => {
    if (i.spotlight && present.has(i.spotlight)) return [i.spotlight, 'spotlight'];
    if (i.pinned && present.has(i.pinned)) return [i.pinned, 'pin'];
    if (i.activeSpeaker && present.has(i.activeSpeaker) && i.activeSpeaker !== i.me) return [i.activeSpeaker, 'speaker'];
    if (i.lastSpeaker && present.has(i.lastSpeaker) && i.lastSpeaker !== i.me) return [i.lastSpeaker, 'recent'];
    const other = i.people.find((p) => p !== i.me);
    return [other ?? i.people[0] ?? null, 'first'];
  };
  // Speaker view, or someone pinned/spotlighted in the grid: one large tile.
  const large = !i.screen && (i.mode === 'speaker' || !!(i.spotlight && present.has(i.spotlight)) || !!(i.pinned && present.has(i.pinned)));
  if (large && i.people.length > 1) {
    const [main, why] = pick();
    return { main, why, tiles: visible.filter((p) => p !== main), pages: 1, page: 0 };
  }
  const pages = Math.max(1, Math.ceil(visible.length / i.pageSize));
  const page = Math.min(Math.max(0, i.page), pages - 1);
  return { main: null, why: null, tiles: visible.slice(page * i.pageSize, page * i.pageSize + i.pageSize), pages, page };
}
