// ESLint flat config: the recommended rules of ESLint and typescript-eslint,
// syntax only (no type information: it stays fast on a 2-core machine, and
// `npm run typecheck` does the type checking). What is tuned below fights the
// house style; each change says why.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'node_modules/'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    rules: {
      // Unused parameters are house style (tsconfig: noUnusedParameters false):
      // methods keep the signature of the interface they implement (`flush(now)`),
      // and hot-path callbacks keep a fixed shape. Unused locals and imports
      // stay errors (tsc's noUnusedLocals checks them too).
      '@typescript-eslint/no-unused-vars': ['error', { args: 'none', ignoreRestSiblings: true }],
    },
  },
  {
    // Tests and bench read JSON printed by other programs (usernet's stats,
    // iperf3, child scripts) and poke at native objects: `any` is the honest
    // type there. The shipped code (stack/, src/) keeps the rule.
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    // Every deliberate error is a UsernetError with a stable `code`
    // (src/errors.ts, which defines the classes and may wrap a thrown
    // non-Error); stack/ throws only RangeError or TypeError for bad
    // arguments. A plain Error, or a class built on it, has no code to
    // switch on.
    files: ['src/**/*.ts', 'stack/**/*.ts'],
    ignores: ['src/errors.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        ...["NewExpression[callee.name='Error']", "CallExpression[callee.name='Error']", "ClassDeclaration[superClass.name='Error']", "ClassExpression[superClass.name='Error']"].map(
          (selector) => ({ selector, message: 'a deliberate error is a UsernetError (or a subclass) with a stable code: see src/errors.ts' }),
        ),
      ],
    },
  },
);
