// The vLLM response shapes the simulator tests read, typed just enough for assertions.

export interface Usage {
  prompt_tokens: number;
  total_tokens: number;
  completion_tokens: number;
  prompt_tokens_details?: null;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: { role: string; content: string; tool_calls: unknown[] };
    finish_reason: string;
    stop_reason: string | null;
  }>;
  usage: Usage;
}

export interface ChatChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    delta: { role?: string; content?: string };
    finish_reason: string | null;
    stop_reason?: string | null;
  }>;
  usage?: Usage;
}

export interface TextCompletion {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: Array<{ index: number; text: string; finish_reason: string | null; stop_reason: string | null }>;
  usage: Usage | null;
}

export interface ErrorEnvelope {
  error: { message: string; type: string; param: string | null; code: number };
}

export interface TokenizeReply {
  count: number;
  max_model_len: number;
  tokens: number[];
}
