// UI strings in English and Simplified Chinese. The language comes from the browser
// (navigator.language) unless the person picked one with the switch (kept in localStorage).

const en = {
  app: 'Meetings',
  lang_switch: '中文',
  lang_switch_label: 'Switch the language to Chinese',
  email: 'Email address',
  send_code: 'Send me a sign-in code',
  code_sent: 'We sent a 6-digit code to {email}. It may take a minute to arrive.',
  code: 'Sign-in code',
  sign_in: 'Sign in',
  other_email: 'Use another address',
  sign_out: 'Sign out',
  signed_in_as: 'Signed in as {email}',
  start_instant: 'Start my instant meeting',
  schedule: 'Schedule a meeting',
  title: 'Title',
  begins: 'Begins',
  duration_min: 'Duration (minutes)',
  invitees: 'Invitees (emails, separated by commas)',
  create: 'Schedule and send invitations',
  scheduled_ok: 'Scheduled. Invitations are on their way.',
  upcoming: 'Your meetings',
  none_yet: 'No meetings yet.',
  instant_room: 'My instant meeting room',
  join: 'Join',
  copy_link: 'Copy link',
  copied: 'Link copied',
  join_code: 'Join with a code',
  meeting_code: 'Meeting code',
  prejoin_title: 'Ready to join?',
  your_name: 'Your name',
  camera: 'Camera',
  microphone: 'Microphone',
  join_muted: 'Join with the microphone muted',
  join_no_camera: 'Join with the camera off',
  join_now: 'Join now',
  no_media: 'No camera or microphone available: you can still join and watch.',
  joining: 'Joining…',
  reconnecting: 'Connection lost. Reconnecting (attempt {n})…',
  mute: 'Mute microphone',
  unmute: 'Unmute microphone',
  cam_off: 'Turn camera off',
  cam_on: 'Turn camera on',
  share: 'Share screen',
  stop_share: 'Stop sharing',
  raise: 'Raise hand',
  lower: 'Lower hand',
  chat: 'Chat',
  people: 'Participants',
  leave: 'Leave',
  devices: 'Devices',
  send: 'Send',
  message: 'Message',
  you: 'you',
  host: 'host',
  host_mute: 'Mute {name}',
  host_remove: 'Remove {name}',
  lock: 'Lock meeting',
  unlock: 'Unlock meeting',
  end_all: 'End for everyone',
  locked_note: 'The meeting is locked: nobody new can join.',
  muted_by_host: 'The host muted your microphone.',
  left_title: 'You left the meeting',
  rejoin: 'Rejoin',
  home: 'Back to the start page',
  reason_removed: 'The host removed you from the meeting.',
  reason_ended: 'The host ended the meeting for everyone.',
  reason_locked: 'The meeting is locked; nobody new can join right now.',
  reason_replaced: 'You joined this meeting from another window.',
  closed_title: 'The meeting is over for you',
  quality: 'Connection quality: {q}',
  q_good: 'good',
  q_fair: 'fair',
  q_poor: 'poor',
  q_connecting: 'connecting',
  presenting: '{name} is presenting',
  hand_raised: '{name} raised a hand',
  error: 'Something went wrong: {msg}',
  not_ready: 'No media server is free right now; trying again…',
  copy_failed: 'Copy this link: {url}',
};

export type Key = keyof typeof en;

const zh: Record<Key, string> = {
  app: '会议',
  lang_switch: 'English',
  lang_switch_label: '将语言切换为英文',
  email: '电子邮件地址',
  send_code: '发送登录验证码',
  code_sent: '我们已向 {email} 发送 6 位验证码，可能需要一分钟才能收到。',
  code: '验证码',
  sign_in: '登录',
  other_email: '使用其他地址',
  sign_out: '退出登录',
  signed_in_as: '已登录：{email}',
  start_instant: '开始我的即时会议',
  schedule: '预约会议',
  title: '主题',
  begins: '开始时间',
  duration_min: '时长（分钟）',
  invitees: '受邀人（电子邮件，用逗号分隔）',
  create: '预约并发送邀请',
  scheduled_ok: '已预约，邀请正在发送。',
  upcoming: '我的会议',
  none_yet: '还没有会议。',
  instant_room: '我的即时会议室',
  join: '加入',
  copy_link: '复制链接',
  copied: '链接已复制',
  join_code: '用会议号加入',
  meeting_code: '会议号',
  prejoin_title: '准备好加入了吗？',
  your_name: '你的名字',
  camera: '摄像头',
  microphone: '麦克风',
  join_muted: '加入时静音麦克风',
  join_no_camera: '加入时关闭摄像头',
  join_now: '立即加入',
  no_media: '没有可用的摄像头或麦克风：你仍然可以加入并观看。',
  joining: '正在加入…',
  reconnecting: '连接已断开，正在重新连接（第 {n} 次）…',
  mute: '静音麦克风',
  unmute: '取消静音',
  cam_off: '关闭摄像头',
  cam_on: '打开摄像头',
  share: '共享屏幕',
  stop_share: '停止共享',
  raise: '举手',
  lower: '放下手',
  chat: '聊天',
  people: '参会者',
  leave: '离开',
  devices: '设备',
  send: '发送',
  message: '消息',
  you: '你',
  host: '主持人',
  host_mute: '将 {name} 静音',
  host_remove: '移除 {name}',
  lock: '锁定会议',
  unlock: '解锁会议',
  end_all: '为所有人结束会议',
  locked_note: '会议已锁定：其他人无法加入。',
  muted_by_host: '主持人将你静音了。',
  left_title: '你已离开会议',
  rejoin: '重新加入',
  home: '返回首页',
  reason_removed: '主持人已将你移出会议。',
  reason_ended: '主持人已为所有人结束会议。',
  reason_locked: '会议已锁定，目前无法加入。',
  reason_replaced: '你已在另一个窗口中加入此会议。',
  closed_title: '会议对你而言已结束',
  quality: '连接质量：{q}',
  q_good: '良好',
  q_fair: '一般',
  q_poor: '较差',
  q_connecting: '连接中',
  presenting: '{name} 正在共享屏幕',
  hand_raised: '{name} 举手了',
  error: '出错了：{msg}',
  not_ready: '目前没有空闲的媒体服务器，正在重试…',
  copy_failed: '请复制此链接：{url}',
};

const tables: Record<string, Record<Key, string>> = { en, 'zh-CN': zh };

function initial(): string {
  const saved = localStorage.getItem('lang');
  if (saved && tables[saved]) return saved;
  return (navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh-CN' : 'en';
}

let lang = initial();

export function currentLang(): string {
  return lang;
}

export function toggleLang(): void {
  lang = lang === 'en' ? 'zh-CN' : 'en';
  localStorage.setItem('lang', lang);
  document.documentElement.lang = lang;
}

export function t(key: Key, vars: Record<string, string | number> = {}): string {
  let s = tables[lang][key] ?? en[key];
  for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, String(v));
  return s;
}

document.documentElement.lang = lang;
