import { hash } from 'node:crypto';
import type { ChatPrompt } from '../hf-textgen/hf-textgen.client.js';
import type { Excerpt } from '../knowledge/excerpt.js';

export const SYSTEM_INSTRUCTION =
  'You are a helpful assistant. Answer the question using only the numbered excerpts from the knowledge base. ' +
  'Cite the excerpts you use like [1]. If the excerpts do not contain the answer, say that you do not know.';

/** Fixed instruction, then the excerpts, then the question. */
export function buildPrompt(query: string, excerpts: readonly Excerpt[]): ChatPrompt {
  const context = excerpts.length ? numbered(excerpts) : '(no excerpt matched the question)';
  return { system: SYSTEM_INSTRUCTION, user: `Excerpts:\n${context}\n\nQuestion: ${query.trim()}` };
}

/** What a caller gets when only the excerpts are left. */
export function answerFromExcerpts(excerpts: readonly Excerpt[]): string {
  return `The assistant's model is unavailable right now; these are the most relevant excerpts from the knowledge base:\n\n${numbered(excerpts)}`;
}

function numbered(excerpts: readonly Excerpt[]): string {
  return excerpts.map((excerpt, i) => `[${i + 1}] ${excerpt.title}\n${excerpt.text}`).join('\n\n');
}

/** The prompt laid out around placeholders: a change to the instruction or the layout changes it. */
const SAMPLE_PROMPT = buildPrompt('{question}', [{ documentId: '{id}', title: '{title}', text: '{text}', score: 0 }]);

/** Part of every cache key, so answers made with an earlier prompt are not served for this one. */
export const PROMPT_VERSION = hash('sha256', `${SAMPLE_PROMPT.system}\n${SAMPLE_PROMPT.user}`, 'base64url').slice(0, 16);
