// ESLint flat config. TypeScript files are linted with type information
// (typescript-eslint's project service reads the nearest tsconfig.json:
// the root one, or scripts/tsconfig.json for scripts/).
import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import tseslint from 'typescript-eslint';

/**
 * The dependency rules of the design: common/ imports no role; the roles
 * never import one another; only the launcher may import every role, and
 * nothing but tests imports the launcher. `scripts/check-imports.ts` checks
 * the same rules on resolved paths (and import cycles); this copy gives
 * feedback in the editor.
 */
const roles = ['producer', 'scheduler', 'gpu-worker', 'launcher'];
const forbid = (folders, why) => ({
  regex: `^(\\.\\./)+(${folders.join('|')})(/|$)`,
  message: why,
});
const boundary = (folder, forbidden, why) => ({
  files: [`${folder}/**/*.ts`],
  rules: { 'no-restricted-imports': ['error', { patterns: [forbid(forbidden, why)] }] },
});

export default defineConfig(
  globalIgnores(['node_modules/', 'dist/', 'coverage/', 'models/', '.tmp/']),

  js.configs.recommended,

  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname,
      },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // Promises: a dropped rejection in a worker is a lost job or a crash.
      '@typescript-eslint/no-floating-promises': ['error', { ignoreVoid: true }],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/only-throw-error': 'error',

      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          args: 'after-used',
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrors: 'all',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
      // verbatimModuleSyntax is on: type-only imports must say so.
      '@typescript-eslint/consistent-type-imports': [
        'error',
        { prefer: 'type-imports', fixStyle: 'inline-type-imports', disallowTypeAnnotations: false },
      ],
      '@typescript-eslint/no-import-type-side-effects': 'error',
      '@typescript-eslint/consistent-type-exports': 'error',

      // Practical relaxations.
      // Async methods that implement an async interface need not await.
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-unused-expressions': ['error', { allowShortCircuit: true, allowTernary: true }],
      '@typescript-eslint/restrict-template-expressions': [
        'error',
        { allowNumber: true, allowBoolean: true, allowNullish: true, allowAny: false, allowNever: true },
      ],

      eqeqeq: ['error', 'smart'],
    },
  },

  boundary('common', roles, 'common/ imports no role (design: dependency rules).'),
  boundary(
    'producer',
    ['scheduler', 'gpu-worker', 'launcher'],
    'Roles never import one another; share code through common/.',
  ),
  boundary(
    'scheduler',
    ['producer', 'gpu-worker', 'launcher'],
    'Roles never import one another; share code through common/.',
  ),
  boundary(
    'gpu-worker',
    ['producer', 'scheduler', 'launcher'],
    'Roles never import one another; share code through common/.',
  ),

  {
    // Tests poke at JSON bodies and mocks: the no-unsafe-* family is noise there.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/unbound-method': 'off',
    },
  },

  {
    // Plain JavaScript (this file): no type information.
    files: ['**/*.{js,mjs,cjs}'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { sourceType: 'module', globals: { process: 'readonly', console: 'readonly' } },
  },
);
