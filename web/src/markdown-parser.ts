// The one Markdown configuration of the notes preview, shared by the page and its worker:
// CommonMark with GFM tables and strikethrough, bare URLs linked, raw HTML shown as text.
import MarkdownIt from 'markdown-it';

export type Parser = ReturnType<typeof MarkdownIt>;

export function parser(): Parser {
  return new MarkdownIt({ html: false, linkify: true, typographer: false });
}
