// Shared by the native GEMM tests: whether the addon loaded (the reason goes into the describe
// title when it did not, so a skip is visible) and AETN_NATIVE_GEMM restored after the file.
import { afterAll } from 'vitest';
import { loadNativeGemm } from '../../src/model/native-gemm.js';

export const native = loadNativeGemm();
export const why = native.ok ? '' : ` (skipped: ${native.reason})`;

export function restoreNativeGemmEnvAfterAll(): void {
  const saved = process.env.AETN_NATIVE_GEMM;
  afterAll(() => {
    if (saved === undefined) delete process.env.AETN_NATIVE_GEMM;
    else process.env.AETN_NATIVE_GEMM = saved;
  });
}
