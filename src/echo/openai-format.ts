/**
 * OpenAI wire shapes the echo server produces: chat completions and legacy completions, whole
 * and as stream chunks. Pure functions, so the shapes are tested without a socket.
 */

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

type ContentPart = { type?: unknown; text?: unknown };
interface ChatMessage {
  role?: unknown;
  content?: unknown;
}

/** Whitespace-separated words: the echo model's "tokens". */
export function words(text: string): string[] {
  return text.split(/\s+/).filter((w) => w.length > 0);
}

function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return (content as ContentPart[])
      .filter((p) => p && typeof p === 'object' && typeof p.text === 'string')
      .map((p) => p.text as string)
      .join(' ');
  }
  return '';
}

/** The text of the last user message (what the echo model replies with). */
export function lastUserText(messages: unknown): string {
  if (!Array.isArray(messages)) return '';
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i] as ChatMessage | null;
    if (m && typeof m === 'object' && m.role === 'user') return contentText(m.content);
  }
  return '';
}

export function promptTokenCount(messages: unknown): number {
  if (!Array.isArray(messages)) return 0;
  let n = 0;
  for (const m of messages as ChatMessage[]) {
    if (m && typeof m === 'object') n += words(contentText(m.content)).length;
  }
  return n;
}

/** A completion prompt: a string or an array of strings (the last one is echoed). */
export function promptText(prompt: unknown): string {
  if (typeof prompt === 'string') return prompt;
  if (Array.isArray(prompt)) {
    const last = prompt.at(-1);
    return typeof last === 'string' ? last : '';
  }
  return '';
}

/** The reply tokens, each but the first with its leading space, so they concatenate back. */
export function replyTokens(
  text: string,
  maxTokens: unknown,
): { tokens: string[]; truncated: boolean } {
  const all = words(text).map((w, i) => (i === 0 ? w : ` ${w}`));
  const limit =
    typeof maxTokens === 'number' && Number.isInteger(maxTokens) && maxTokens >= 0
      ? maxTokens
      : Number.POSITIVE_INFINITY;
  return { tokens: all.slice(0, limit), truncated: all.length > limit };
}

export function usage(prompt: number, completion: number): Usage {
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
  };
}

export interface CompletionMeta {
  id: string;
  created: number;
  model: string;
}

/** The fields every completion object and chunk starts with. */
function head(meta: CompletionMeta, object: string) {
  return { id: meta.id, object, created: meta.created, model: meta.model };
}

export function chatCompletion(
  meta: CompletionMeta,
  content: string,
  finishReason: 'stop' | 'length',
  u: Usage,
) {
  return {
    ...head(meta, 'chat.completion'),
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content, refusal: null },
        logprobs: null,
        finish_reason: finishReason,
      },
    ],
    usage: u,
  };
}

export function chatChunk(
  meta: CompletionMeta,
  delta: { role?: 'assistant'; content?: string },
  finishReason: 'stop' | 'length' | null,
) {
  return {
    ...head(meta, 'chat.completion.chunk'),
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
  };
}

/** The last chunk of a stream with `stream_options.include_usage`: no choices, the usage. */
export function usageChunk(
  meta: CompletionMeta,
  object: 'chat.completion.chunk' | 'text_completion',
  u: Usage,
) {
  return { ...head(meta, object), choices: [], usage: u };
}

export function textCompletion(
  meta: CompletionMeta,
  text: string,
  finishReason: 'stop' | 'length' | null,
  u?: Usage,
) {
  return {
    ...head(meta, 'text_completion'),
    choices: [{ index: 0, text, logprobs: null, finish_reason: finishReason }],
    ...(u ? { usage: u } : {}),
  };
}

/** OpenAI's error body. */
export function errorBody(message: string, type: string, code: string | null = null) {
  return { error: { message, type, param: null, code } };
}
