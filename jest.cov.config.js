// Coverage of src/ by the unit and in-process e2e suites together, with the gate `npm test` enforces.
// Not counted: main.ts (the bootstrap; process.e2e-spec runs it as a real process, outside jest's coverage),
// and files with no code that runs (barrel re-exports, type-only modules).
/** @type {import('jest').Config} */
export default {
  projects: ['<rootDir>/jest.config.js', '<rootDir>/test/jest-e2e.config.js'],
  collectCoverageFrom: [
    '<rootDir>/src/**/*.ts',
    '!<rootDir>/src/**/*.spec.ts',
    '!<rootDir>/src/main.ts',
    '!<rootDir>/src/**/index.ts',
    '!<rootDir>/src/knowledge/excerpt.ts',
  ],
  coverageProvider: 'v8',
  coverageReporters: ['text-summary', 'text', 'json-summary'],
  testTimeout: 20_000,
  coverageThreshold: { global: { statements: 95, branches: 95 } },
};
