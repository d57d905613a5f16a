// The app's chat: a turn is assembled from the stored conversation (system prompt + history + the
// new messages), fitted to the model's context, written while vLLM starts and before the first byte
// of the answer (the user message and an assistant message in status `streaming`), relayed, and
// completed with whatever came back — complete, interrupted (client gone, stopped, shutdown) or
// error. Nothing is lost.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Principal } from '../auth/authenticate.js';
import type { ConversationsRepository, MessageRecord } from '../conversations/repository.js';
import type { ConversationsService } from '../conversations/service.js';
import { untitled } from '../conversations/service.js';
import { GatewayError } from '../errors.js';
import type { ModelCatalog } from '../upstream/model-catalog.js';
import type { Logger } from 'pino';
import { fitToContext, type ChatMessage } from './context-window.js';
import type { GenerationRegistry, RunningGeneration } from './generation-registry.js';
import type { RelayResult, RelayService } from './relay-service.js';
import { replayTurn } from './turn-replay.js';
import { newTurnIds } from '../conversations/turn-start.js';

export interface ChatRequestBody extends Record<string, unknown> {
  messages: ChatMessage[];
  conversation_id?: string;
  store?: boolean;
  model?: string;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
}

/** Fields of the chat API that are the gateway's, not vLLM's. */
const chatOnlyFields = ['conversation_id', 'store'] as const;
const storableRoles = new Set(['system', 'developer', 'user', 'assistant', 'tool']);
const titleLength = 80;

export function createChatService(dependencies: {
  relayService: RelayService;
  conversationsService: ConversationsService;
  conversations: ConversationsRepository;
  registry: GenerationRegistry;
  catalog: ModelCatalog;
  countTokens: (input: { model: string | null; messages: ChatMessage[] }) => Promise<number | null>;
  maxHistoryMessages: number;
  /** Keep a conversation on one vLLM server, for its prefix cache. */
  affinity: boolean;
  logger: Logger;
}) {
  const { relayService, conversations, registry, catalog } = dependencies;

  /** Answers a retried send with the turn its first attempt produced; false when there is none to replay. */
  async function replayIfKnown(input: { reply: FastifyReply; userId: string; key: string; stream: boolean }): Promise<boolean> {
    const previous = await conversations.findTurnByIdempotencyKey(input.userId, input.key);
    if (previous === undefined) return false;
    if (previous.assistant === undefined || previous.assistant.status === 'streaming') {
      throw new GatewayError('conflict', 'A request with this Idempotency-Key is still being answered');
    }
    await replayTurn({ reply: input.reply, stream: input.stream, conversationId: previous.conversationId, userMessageId: previous.userMessageId, assistant: previous.assistant });
    return true;
  }

  /** Returns how the generation went, or null when a finished turn was replayed (nothing generated). */
  async function chat(input: { request: FastifyRequest; reply: FastifyReply; principal: Principal; body: ChatRequestBody; idempotencyKey: string | null }): Promise<RelayResult | null> {
    const { request, reply, principal, body } = input;
    const store = body.store !== false;
    const stream = body.stream === true;
    const conversation = body.conversation_id === undefined ? null : await dependencies.conversationsService.getOwned(body.conversation_id, principal.userId);
    const idempotencyKey = store ? input.idempotencyKey : null;
    if (idempotencyKey !== null && (await replayIfKnown({ reply, userId: principal.userId, key: idempotencyKey, stream }))) return null;

    const model = body.model ?? conversation?.model ?? (await defaultModel());
    const settings = conversation?.settings ?? {};
    const leading: ChatMessage[] = conversation?.system_prompt ? [{ role: 'system', content: conversation.system_prompt }] : [];
    const history = conversation === null ? [] : (await conversations.history(conversation.id, dependencies.maxHistoryMessages)).map(toChatMessage);
    const maxTokens = body.max_tokens ?? body.max_completion_tokens ?? (typeof settings.max_tokens === 'number' ? settings.max_tokens : null);
    const fitted = await fitToContext({
      leading,
      history,
      newMessages: body.messages,
      maxModelLength: await maxModelLengthOf(model),
      reservedForAnswer: maxTokens ?? 1,
      countTokens: (messages) => dependencies.countTokens({ model, messages }),
    });

    const upstreamBody: Record<string, unknown> = { ...settings, ...body, messages: fitted.messages };
    for (const field of chatOnlyFields) delete upstreamBody[field];
    if (model !== null && upstreamBody.model === undefined) upstreamBody.model = model;

    // The turn's ids are chosen here, so the stream can start while the turn is being written.
    const stored = store ? body.messages.filter((message) => storableRoles.has(message.role)).map((message) => ({ role: message.role as MessageRecord['role'], content: textOf(message.content) })) : [];
    const turn = store ? newTurnIds(conversation?.id ?? null, stored.length) : null;
    let written: Promise<unknown> | null = null;
    if (turn !== null) {
      const started = conversations.startTurn({
        conversation: conversation === null ? { create: newConversation(principal.userId, body, model) } : { id: conversation.id },
        userId: principal.userId,
        messages: stored,
        model,
        requestId: request.id,
        idempotencyKey,
        ids: turn,
      });
      if (idempotencyKey !== null) {
        // A keyed send is written before vLLM hears of it: the loser of a double send never reaches vLLM.
        if ((await started) === 'duplicate') {
          if (await replayIfKnown({ reply, userId: principal.userId, key: idempotencyKey, stream })) return null;
          throw new GatewayError('conflict', 'A request with this Idempotency-Key is still being answered');
        }
      } else {
        // Written while vLLM starts: the relay waits for it before the first byte, so a stored turn
        // costs the stream nothing and a turn that cannot be stored is never answered.
        written = started;
        started.catch(() => undefined);
      }
    }
    const lastUserIndex = stored.map((message) => message.role).lastIndexOf('user');
    const ids = {
      conversation_id: turn?.conversationId ?? conversation?.id ?? null,
      user_message_id: turn === null || lastUserIndex === -1 ? null : (turn.messageIds[lastUserIndex] ?? null),
      assistant_message_id: turn?.assistantMessageId ?? null,
    };

    const generation: RunningGeneration | null = turn === null ? null : registry.register(turn.assistantMessageId);
    let saved = false;
    const save = async (outcome: Parameters<typeof saveAssistant>[1]) => {
      if (turn === null || saved) return;
      saved = true;
      await saveAssistant(turn.assistantMessageId, outcome);
    };
    let result: RelayResult;
    try {
      result = await relayService.relay({
        request,
        reply,
        principal,
        endpoint: 'chat.completions',
        body: upstreamBody,
        collectText: true,
        leadingEvents: [conversationEvent({ ...ids, trimmed_messages: fitted.droppedMessages })],
        ...(written === null ? {} : { ready: written }),
        ...(generation === null ? {} : { stop: { signal: generation.signal, reason: generation.reason } }),
        rewriteJson: (completion) => ({ ...completion, conversation_id: ids.conversation_id, message_id: ids.assistant_message_id, trimmed_messages: fitted.droppedMessages }),
        affinityKey: dependencies.affinity ? ids.conversation_id : null,
        // The answer is stored before the client hears it is complete, so a next turn always sees it.
        beforeFinish: (finished) => save({ ...describeEnding(finished), requestId: request.id, model: finished.model ?? model, result: finished }),
      });
    } catch (error) {
      // The placeholder must exist before it is marked; if it could not be written, there is nothing to mark.
      await written?.catch(() => undefined);
      // Stopped (or shut down) before vLLM answered a JSON request: interrupted, not failed.
      const stopped = generation?.signal.aborted === true;
      await save({
        content: '',
        status: stopped ? 'interrupted' : 'error',
        statusReason: stopped ? (generation?.reason() === 'shutdown' ? 'the gateway shut down' : 'stopped by the user') : error instanceof GatewayError ? error.message : 'internal error',
        requestId: request.id,
        model,
      });
      throw error;
    } finally {
      generation?.release();
    }
    // A client that left before vLLM answered ends the relay without it waiting for the write.
    await written?.catch(() => undefined);
    await save({ ...describeEnding(result), requestId: request.id, model: result.model ?? model, result });
    return result;
  }

  async function defaultModel(): Promise<string | null> {
    return catalog.defaultModel() ?? (await catalog.list().catch(() => null))?.data[0]?.id ?? null;
  }

  /** The assistant message's last write; a failure here is logged, never turned into a lost answer silently. */
  async function saveAssistant(
    messageId: string,
    outcome: { content: string; status: MessageRecord['status']; statusReason: string | null; requestId: string; model: string | null; result?: RelayResult },
  ): Promise<void> {
    const { result } = outcome;
    try {
      await conversations.finishAssistant(messageId, {
        content: outcome.content,
        status: outcome.status,
        statusReason: outcome.statusReason,
        finishReason: result?.finishReason ?? null,
        model: outcome.model,
        promptTokens: result?.usage.prompt_tokens ?? null,
        completionTokens: result?.usage.completion_tokens ?? null,
        ttftMs: result?.ttftMs ?? null,
        durationMs: result?.durationMs ?? 0,
        requestId: outcome.requestId,
      });
    } catch (error) {
      dependencies.logger.error({ err: error, message_id: messageId }, 'could not save the assistant message; the sweep will mark it interrupted');
    }
  }

  /** The model's context length; the model list is fetched if it is not known yet (cold start). */
  async function maxModelLengthOf(model: string | null): Promise<number | null> {
    if (model === null) return null;
    if (catalog.find(model) === null) await catalog.list().catch(() => null);
    const length = catalog.find(model)?.max_model_len;
    return typeof length === 'number' ? length : null;
  }

  return { chat };
}

export type ChatService = ReturnType<typeof createChatService>;

function describeEnding(result: RelayResult): { content: string; status: MessageRecord['status']; statusReason: string | null } {
  if (result.outcome === 'ok') return { content: result.text, status: 'complete', statusReason: null };
  if (result.outcome === 'aborted') {
    const reasons: Record<string, string> = {
      client_disconnect: 'the client disconnected',
      slow_client: 'the client stopped reading',
      stopped: 'stopped by the user',
      shutdown: 'the gateway shut down',
    };
    return { content: result.text, status: 'interrupted', statusReason: reasons[result.abortReason ?? ''] ?? 'interrupted' };
  }
  return { content: result.text, status: 'error', statusReason: result.error?.message ?? 'generation failed' };
}

function newConversation(userId: string, body: ChatRequestBody, model: string | null) {
  const firstUser = body.messages.find((message) => message.role === 'user');
  const text = firstUser === undefined ? '' : textOf(firstUser.content).replace(/\s+/g, ' ').trim();
  const title = text === '' ? untitled : text.length > titleLength ? `${text.slice(0, titleLength - 1).trimEnd()}…` : text;
  return { userId, title, model: body.model ?? model, systemPrompt: null, settings: {} };
}

/** Message content as stored: a string as is; multimodal parts keep their text parts. */
function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part: unknown) => (typeof part === 'object' && part !== null && typeof (part as { text?: unknown }).text === 'string' ? (part as { text: string }).text : ''))
    .filter((text) => text !== '')
    .join('\n');
}

function toChatMessage(message: MessageRecord): ChatMessage {
  return { role: message.role, content: message.content };
}

function conversationEvent(payload: Record<string, unknown>): Buffer {
  return Buffer.from(`event: conversation\ndata: ${JSON.stringify(payload)}\n\n`);
}
