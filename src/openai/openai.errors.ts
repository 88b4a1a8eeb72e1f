/** A Chat Completions request the service cannot take: 400 in OpenAI's error shape, `param` naming the field at fault. */
export class InvalidChatRequestError extends Error {
  constructor(
    message: string,
    readonly param: string | null,
    readonly code: string | null,
  ) {
    super(message);
    this.name = 'InvalidChatRequestError';
  }
}
