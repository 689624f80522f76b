// Meeting files through the fsserver (src/roles/apiserver/files.rs): the apiserver grants an
// upload URL on the meeting's fsserver, the bytes go straight there, and the fsserver's
// signed receipt is committed back to the apiserver, which then lists the file.
import { api, ApiError } from './api';

export interface MeetingFile {
  id: string; name: string; content_type: string; size: number; sha256: string;
  created_at: number; uploaded_by: number | null;
  /** The stable path notes use (`/api/v1/meetings/{id}/files/{file}`, redirects to the bytes). */
  url: string;
  download_url: string;
}

/** The stable path of a meeting's file, as notes reference it. */
export const FILE_PATH = /^\/api\/v1\/meetings\/(\d+)\/files\/([A-Za-z0-9_-]+)$/;

export async function listFiles(meeting: number, headers: Record<string, string>): Promise<MeetingFile[]> {
  return api<MeetingFile[]>('GET', `/meetings/${meeting}/files`, undefined, headers);
}

/** Uploads one file (grant, PUT to the fsserver, commit); `progress` gets 0…1. */
export async function upload(meeting: number, file: Blob, name: string, headers: Record<string, string>,
  progress: (f: number) => void = () => {}): Promise<MeetingFile> {
  const type = file.type || 'application/octet-stream';
  const grant = await api<{ id: string; upload_url: string; commit_url: string }>('POST', `/meetings/${meeting}/files`,
    { name, content_type: type, size: file.size }, headers);
  // XMLHttpRequest rather than fetch: it reports upload progress.
  const stored = await new Promise<{ receipt: string }>((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open('PUT', grant.upload_url);
    x.setRequestHeader('Content-Type', type);
    x.responseType = 'json';
    x.upload.onprogress = (e) => { if (e.lengthComputable) progress(e.loaded / e.total); };
    x.onload = () => {
      if (x.status >= 200 && x.status < 300 && x.response?.receipt) resolve(x.response);
      else reject(new ApiError(x.status, x.response?.error || 'upload_failed', x.response?.message || `HTTP ${x.status}`));
    };
    x.onerror = () => reject(new ApiError(0, 'upload_failed', 'the file server could not be reached'));
    x.send(file);
  });
  return api<MeetingFile>('POST', `/meetings/${meeting}/files/${grant.id}/commit`, { receipt: stored.receipt }, headers);
}

export function humanSize(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
