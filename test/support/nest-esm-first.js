// Jest set-up file. NestJS 12 is ESM-only, and @nestjs/throttler is CommonJS that require()s it. Jest links a
// CommonJS dependency while it links the ES module graph, before that graph runs, so a require() of @nestjs/common
// from there would meet it half-linked ("Cannot require() ES Module … in a cycle"). Evaluated here first, it is
// complete when the throttler asks for it. Node itself needs none of this: its require(esm) loads the finished module.
await import('@nestjs/common');
await import('@nestjs/core');
