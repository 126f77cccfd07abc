import type { GuestName, Recipe } from '../recipe.js';
import { busybox } from './busybox.js';
import { debian } from './debian.js';
import { firmware } from './firmware.js';
import { initramfs } from './initramfs.js';
import { linux } from './linux.js';
import { rootfs } from './rootfs.js';

export const RECIPES: Record<GuestName, Recipe> = { firmware, linux, busybox, initramfs, rootfs, debian };
