// Answers a retried request (same Idempotency-Key) with the turn the first one produced, instead
// of generating twice: as a short stream for /api/chat, as a chat.completion for the JSON endpoint.
import type { OutgoingHttpHeaders } from 'node:http';
import type { FastifyReply } from 'fastify';
import type { MessageRecord } from '../conversations/repository.js';
import { doneEvent, sseHeaders } from './sse.js';

export async function replayTurn(input: { reply: FastifyReply; stream: boolean; conversationId: string; userMessageId: string; assistant: MessageRecord }): Promise<void> {
  const { reply, assistant } = input;
  const id = `chatcmpl-replay-${assistant.id}`;
  const created = Math.floor(assistant.created_at.getTime() / 1000);
  const model = assistant.model ?? 'unknown';
  const usage =
    assistant.prompt_tokens === null || assistant.completion_tokens === null
      ? null
      : { prompt_tokens: assistant.prompt_tokens, completion_tokens: assistant.completion_tokens, total_tokens: assistant.prompt_tokens + assistant.completion_tokens };
  const ids = { conversation_id: input.conversationId, user_message_id: input.userMessageId, assistant_message_id: assistant.id, replayed: true };
  reply.header('idempotent-replayed', 'true');

  if (!input.stream) {
    await reply.send({
      id,
      object: 'chat.completion',
      created,
      model,
      choices: [{ index: 0, message: { role: 'assistant', content: assistant.content }, finish_reason: assistant.finish_reason }],
      usage,
      conversation_id: input.conversationId,
      message_id: assistant.id,
      status: assistant.status,
    });
    return;
  }

  const chunk = (delta: Record<string, unknown>, finishReason: string | null) =>
    `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finishReason }] })}\n\n`;
  reply.hijack();
  reply.raw.writeHead(200, { ...(reply.getHeaders() as OutgoingHttpHeaders), ...sseHeaders });
  reply.raw.write(`event: conversation\ndata: ${JSON.stringify(ids)}\n\n`);
  reply.raw.write(chunk({ role: 'assistant', content: '' }, null));
  reply.raw.write(chunk({ content: assistant.content }, assistant.finish_reason ?? 'stop'));
  reply.raw.end(doneEvent);
}
